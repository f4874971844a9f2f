"""The ``service_settings`` table: values that every process of the shop reads and that
change while the processes run (the CNN in service)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, delete, select

from vitrine.catalog.models import ServiceSetting, utcnow

CNN_VERSION = "cnn_version"


class ServiceSettings:
    """Every read and write of the ``service_settings`` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, key: str, default: Any = None) -> Any:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(ServiceSetting.value).where(ServiceSetting.key == key)
            ).scalar()
        return default if value is None else value

    def set(self, key: str, value: Any) -> None:
        """Insert or replace ``key`` (one transaction: readers see the old or the new)."""
        with self.engine.begin() as conn:
            conn.execute(delete(ServiceSetting).where(ServiceSetting.key == key))
            conn.execute(
                ServiceSetting.__table__.insert().values(key=key, value=value, updated_at=utcnow())
            )
