"""Thread-safe LRU memos shared by every session of a Streamlit server (a lock around each access)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any


class Memo:
    """A small LRU dict safe across threads: a Streamlit server keeps these modules alive across reruns and
    sessions, and sessions run in threads. `get` returns None for a missing key; values are never None."""

    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> Any:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)
        return value

    def __contains__(self, key: Any) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
