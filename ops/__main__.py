from ops.cli import main

if __name__ == "__main__":  # not when a replay's fold processes import this module again
    main()
