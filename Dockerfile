# persona-stream: one image for the gateway, the worker and the simulator (see docker-compose.yml).
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY core ./core
COPY persona_stream ./persona_stream
COPY gateway ./gateway
COPY processors ./processors
COPY schemas ./schemas
COPY bench ./bench
RUN pip install --no-cache-dir -c constraints.txt . \
    && useradd --uid 10001 --create-home persona

USER persona
ENV PERSONA_STREAM_CACHE_DIR=/home/persona/.cache/persona-stream
ENTRYPOINT ["persona-stream"]
CMD ["--help"]
