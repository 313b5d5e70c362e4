"""chat_assets: UJET chat records landed, flattened and guarded in PostgreSQL by Dagster."""
