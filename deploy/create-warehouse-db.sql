-- The warehouse lives in its own database beside Dagster's storage.
CREATE DATABASE warehouse;
