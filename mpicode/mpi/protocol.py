"""The wire protocol's old home: it lives in :mod:`mpicode.wire` (pure, importable without
mpi4py); every name stays importable from here."""

from mpicode.wire import *  # noqa: F401,F403
from mpicode.wire import (  # noqa: F401
    CHUNK_HEADER,
    IT,
    REPORT,
    RESULT_HEADER,
    TAG_ACK,
    TAG_CANCEL,
    TAG_CHUNK,
    TAG_GRANT,
    TAG_MODEL,
    TAG_PARTIAL,
    TAG_READY,
    TAG_RESULT,
    TAG_STOP,
    TAG_TASK,
    TASK,
    TASK_HEADER,
    Chunk,
    Grant,
    Layout,
    Ready,
    ReadyLayout,
    Result,
    Task,
)
