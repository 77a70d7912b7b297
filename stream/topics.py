"""Create the external topics when missing, so producers can start before the worker."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from core.settings import Settings


def external_topic_names(settings: Settings) -> list[str]:
    return [settings.transactions_topic, settings.dead_letter_topic]


async def ensure_topics(
    bootstrap: str, names: list[str], partitions: int, replication: int
) -> list[str]:
    """Create the topics in ``names`` that do not exist yet; the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in names if name not in existing]
        if missing:
            await admin.create_topics([NewTopic(name, partitions, replication) for name in missing])
        return missing
    finally:
        await admin.close()
