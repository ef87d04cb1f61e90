from customers.cli import main

main()
