"""Connections of metric projects to Label Studio projects, kept in the state directory.

`ConnectionStorage` is the interface that sync, the webhook receiver and the CLI use.
`ConnectionStore` implements it on the state directory, and `aws_store.AwsConnectionStore` on S3
and SSM Parameter Store.

Layout, one folder per metric project:

    label-studio/<project>/connection.json   URL, Label Studio project id, score key, pair mode
    label-studio/<project>/token             the Label Studio API token (mode 0600)
    label-studio/<project>/webhook-secret    the shared secret that webhooks must send (mode 0600)
    label-studio/<project>/annotations.json   annotation id -> task id, for deletion events
    label-studio/<project>/sync.json         time and outcome of the last reconcile

Files are written to a temporary file and renamed into place. The secrets are created with mode
0600 before any byte is written to them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from custom_metrics import naming
from custom_metrics.atomic_files import write_atomically
from custom_metrics.errors import InvalidInputError, ServiceError
from custom_metrics.labelstudio.client import LabelStudioClient
from custom_metrics.tasks import PAIR_MODES

TOKEN_VARIABLE = "LABEL_STUDIO_API_KEY"  # noqa: S105 (a variable name, not a secret)
DEFAULT_SCORE_KEY = "agreement_score"
# Label Studio's own JSON_MIN and CSV exports write the Enterprise agreement under `agreement`.
RESERVED_SCORE_KEYS = frozenset({"agreement"})
SCORE_KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
SECRET_BYTES = 32

_CONNECTION_FILE = "connection.json"
_TOKEN_FILE = "token"  # noqa: S105 (a file name)
_SECRET_FILE = "webhook-secret"  # noqa: S105 (a file name)
_MAP_FILE = "annotations.json"
_SYNC_FILE = "sync.json"


class ConnectionNotFoundError(ServiceError):
    """The metric project has no Label Studio connection."""

    status_code = 404


@dataclass(frozen=True)
class Connection:
    """A metric project connected to one Label Studio project."""

    project: str
    url: str
    ls_project: int
    score_key: str = DEFAULT_SCORE_KEY
    pair_mode: str = "annotations"
    prefix: str | None = None
    webhook_id: int | None = None
    view_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Connection:
        fields = {name: body[name] for name in cls.__dataclass_fields__ if name in body}
        return cls(**fields)


def validate_score_key(key: str) -> str:
    if not SCORE_KEY_PATTERN.match(key):
        raise InvalidInputError(
            f"score key {key!r} is invalid; use letters, digits and '_' (at most 64, not starting with a digit)"
        )
    if key in RESERVED_SCORE_KEYS:
        raise InvalidInputError(
            f"score key {key!r} is reserved because Label Studio's own exports write the Enterprise agreement "
            "under it; use another key such as agreement_score"
        )
    return key


def validate_pair_mode(mode: str) -> str:
    if mode not in PAIR_MODES:
        raise InvalidInputError(f"pair mode {mode!r} is invalid; use one of {', '.join(PAIR_MODES)}")
    return mode


def validate_project(project: str) -> str:
    """Raise InvalidInputError unless `project` is a valid metric project name, safe as a path or key part."""
    naming.function_name(project)
    return project


def not_connected_error(project: str) -> ConnectionNotFoundError:
    return ConnectionNotFoundError(
        f"project {project!r} is not connected to Label Studio; "
        f"run `custom-metrics connect {project} --label-studio URL --ls-project N` first"
    )


def token_or_environment(project: str, stored: str | None) -> str:
    """Return the stored token, else $LABEL_STUDIO_API_KEY; raise when neither is set."""
    if stored and stored.strip():
        return stored.strip()
    from_environment = os.environ.get(TOKEN_VARIABLE, "").strip()
    if from_environment:
        return from_environment
    raise ConnectionNotFoundError(
        f"no Label Studio API token for project {project!r}; set {TOKEN_VARIABLE} or run `custom-metrics connect`"
    )


def require_token_value(token: str) -> str:
    if not token.strip():
        raise InvalidInputError("the Label Studio API token is empty; copy it from Account & Settings")
    return token.strip()


class AnnotationIndex(Protocol):
    """Annotation id -> task id of one connected project."""

    def tasks_of(self, annotation_ids: Iterable[int]) -> tuple[set[int], list[int]]: ...

    def set_task(self, task: int, annotation_ids: Iterable[int]) -> None: ...

    def remove_tasks(self, tasks: Iterable[int]) -> None: ...

    def replace(self, mapping: dict[int, int]) -> None: ...


class ConnectionStorage(Protocol):
    """Storage of connections, their secrets, annotation maps and sync state."""

    def save(self, connection: Connection) -> None: ...

    def load(self, project: str) -> Connection: ...

    def exists(self, project: str) -> bool: ...

    def projects(self) -> list[str]:
        """List the connected metric projects, sorted by name."""
        ...

    def save_token(self, project: str, token: str) -> None: ...

    def token(self, project: str) -> str: ...

    def webhook_secret(self, project: str, *, create: bool = False) -> str | None: ...

    def client(self, connection: Connection) -> LabelStudioClient: ...

    def annotation_map(self, project: str) -> AnnotationIndex: ...

    def save_sync_state(self, project: str, state: dict[str, Any]) -> None: ...

    def sync_state(self, project: str) -> dict[str, Any]: ...


class ConnectionStore:
    """Reads and writes the connections under `<state_dir>/label-studio`."""

    def __init__(self, state_dir: Path) -> None:
        self.root = Path(state_dir) / "label-studio"

    def folder(self, project: str) -> Path:
        return self.root / validate_project(project)  # Rejects names that are not safe as a folder name.

    # Connection ---------------------------------------------------------------------------

    def save(self, connection: Connection) -> None:
        validate_score_key(connection.score_key)
        validate_pair_mode(connection.pair_mode)
        payload = json.dumps(connection.to_json(), indent=2, sort_keys=True).encode()
        write_atomically(self.folder(connection.project) / _CONNECTION_FILE, payload)

    def load(self, project: str) -> Connection:
        path = self.folder(project) / _CONNECTION_FILE
        try:
            body = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise not_connected_error(project) from None
        return Connection.from_json(body)

    def exists(self, project: str) -> bool:
        return (self.folder(project) / _CONNECTION_FILE).is_file()

    def projects(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(path.parent.name for path in self.root.glob(f"*/{_CONNECTION_FILE}"))

    # Secrets ------------------------------------------------------------------------------

    def save_token(self, project: str, token: str) -> None:
        write_atomically(self.folder(project) / _TOKEN_FILE, require_token_value(token).encode(), private=True)

    def token(self, project: str) -> str:
        """Return the stored token, else $LABEL_STUDIO_API_KEY; raise when neither is set."""
        path = self.folder(project) / _TOKEN_FILE
        stored = None
        with contextlib.suppress(FileNotFoundError):
            stored = path.read_text("utf-8")
        return token_or_environment(project, stored)

    def webhook_secret(self, project: str, *, create: bool = False) -> str | None:
        """Return the project's webhook secret; with `create`, make one when there is none."""
        path = self.folder(project) / _SECRET_FILE
        with contextlib.suppress(FileNotFoundError):
            stored = path.read_text("utf-8").strip()
            if stored:
                return stored
        if not create:
            return None
        secret = secrets.token_urlsafe(SECRET_BYTES)
        write_atomically(path, secret.encode(), private=True)
        return secret

    def client(self, connection: Connection) -> LabelStudioClient:
        return LabelStudioClient(connection.url, self.token(connection.project))

    # Annotation -> task map and sync state ------------------------------------------------

    def annotation_map(self, project: str) -> AnnotationMap:
        return AnnotationMap(self.folder(project) / _MAP_FILE)

    def save_sync_state(self, project: str, state: dict[str, Any]) -> None:
        write_atomically(self.folder(project) / _SYNC_FILE, json.dumps(state, indent=2, sort_keys=True).encode())

    def sync_state(self, project: str) -> dict[str, Any]:
        try:
            state = json.loads((self.folder(project) / _SYNC_FILE).read_bytes())
        except FileNotFoundError:
            return {}
        return state if isinstance(state, dict) else {}


MappingChange = Callable[[dict[str, int]], None]


class AnnotationMapBase:
    """Annotation id -> task id, because deletion webhooks carry annotation ids only.

    Subclasses read the whole map (`_read`) and apply a change to it as one atomic
    read-modify-write (`_update`). Keys are annotation ids as strings, as JSON stores them.
    """

    def tasks_of(self, annotation_ids: Iterable[int]) -> tuple[set[int], list[int]]:
        """Return the task ids of the known annotations and the annotation ids that are unknown."""
        mapping = self._read()
        tasks: set[int] = set()
        unknown: list[int] = []
        for annotation in annotation_ids:
            task = mapping.get(str(annotation))
            if task is None:
                unknown.append(annotation)
            else:
                tasks.add(task)
        return tasks, unknown

    def set_task(self, task: int, annotation_ids: Iterable[int]) -> None:
        """Record that `task` has exactly these annotations now."""
        entries = {str(annotation): task for annotation in annotation_ids}

        def change(mapping: dict[str, int]) -> None:
            for key in [key for key, value in mapping.items() if value == task]:
                del mapping[key]
            mapping.update(entries)

        self._update(change)

    def remove_tasks(self, tasks: Iterable[int]) -> None:
        removed = set(tasks)

        def change(mapping: dict[str, int]) -> None:
            for key in [key for key, value in mapping.items() if value in removed]:
                del mapping[key]

        self._update(change)

    def replace(self, mapping: dict[int, int]) -> None:
        entries = {str(annotation): task for annotation, task in mapping.items()}

        def change(current: dict[str, int]) -> None:
            current.clear()
            current.update(entries)

        self._update(change)

    def _read(self) -> dict[str, int]:
        raise NotImplementedError

    def _update(self, change: MappingChange) -> None:
        raise NotImplementedError


def parse_annotation_map(raw: bytes) -> dict[str, int]:
    body = json.loads(raw)
    return {str(key): int(value) for key, value in body.items()} if isinstance(body, dict) else {}


class AnnotationMap(AnnotationMapBase):
    """The annotation map in one JSON file.

    Each change is a locked read-modify-write of the file, so the server and a `reconcile`
    run in another process do not lose each other's entries.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, int]:
        try:
            return parse_annotation_map(self.path.read_bytes())
        except FileNotFoundError:
            return {}

    def _update(self, change: MappingChange) -> None:
        with self._locked() as mapping:
            change(mapping)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, int]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                mapping = self._read()
                yield mapping
                write_atomically(self.path, json.dumps(mapping, sort_keys=True).encode())
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
