FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY customers customers
COPY streams streams
COPY projections projections
COPY api api
COPY webhooks webhooks
COPY ops ops
COPY testing testing
COPY migrations migrations
RUN pip install --no-cache-dir .
ENV PYTHONPATH=/app
ENTRYPOINT ["customers"]
