FROM python:3.11-slim
WORKDIR /opt/chat_assets
COPY requirements.lock pyproject.toml README.md ./
COPY chat_assets ./chat_assets
# The product's dependencies at the lock's versions; not the demo's or the tests' (the `demo` and
# `dev` extras), which the lock pins too.
RUN pip install --no-cache-dir -c requirements.lock .
ENV DAGSTER_HOME=/opt/dagster_home
# glibc gives each thread that allocates its own heap arena: a day's fetch lanes would hold tens
# of megabytes of freed page buffers in them. Two arenas keep the run's memory to its data.
ENV MALLOC_ARENA_MAX=2
COPY dagster.yaml workspace.yaml /opt/dagster_home/
