"""Constants shared by the local worker (`worker`) and its supervisor (`custom_metrics.sandbox`).

Frames on the worker's pipes are a 4-byte big-endian length followed by that many bytes of JSON. The
worker first sends one ready frame, then one response frame for each request frame.

The worker publishes the index of the pair it is running in a small shared file, as PAIR_INDEX at offset
0. It writes IDLE_INDEX between batches and LOADING_INDEX while importing metric.py. After killing the
worker or seeing it die, the supervisor reads the file to name the culprit.
"""

from __future__ import annotations

import struct

FRAME_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 1 << 30
PAIR_INDEX = struct.Struct("<q")
IDLE_INDEX = -1
LOADING_INDEX = -2
READY_FRAME = b'{"ready":true}'
# Before each batch the worker writes this prefix and the batch's request id as one line on stderr. The
# supervisor takes the line off the output and tags the lines that follow with that request id.
REQUEST_MARKER = "\x1ecustom-metrics-request "

# Exit status of a worker that ran out of memory outside user code (while decoding or encoding a frame).
EXIT_MEMORY = 86
# Exit status of a worker whose request frame was malformed or whose runtime raised.
EXIT_PROTOCOL_ERROR = 70
