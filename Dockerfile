# The Keel image: `keel api`, `keel worker` (and `keel dev`) from one build.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY keel keel
COPY workflows workflows
COPY activities activities
COPY api api
COPY worker worker
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --create-home --uid 10001 keel
USER keel
WORKDIR /home/keel
ENV KEEL_DATA_DIR=/home/keel/data \
    KEEL_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
EXPOSE 8000
ENTRYPOINT ["keel"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
