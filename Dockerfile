FROM python:3.11-slim
WORKDIR /opt/chat_assets
COPY requirements.lock pyproject.toml README.md ./
COPY chat_assets ./chat_assets
RUN pip install --no-cache-dir -r requirements.lock && pip install --no-cache-dir --no-deps .
ENV DAGSTER_HOME=/opt/dagster_home
COPY dagster.yaml workspace.yaml /opt/dagster_home/
