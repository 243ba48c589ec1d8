"""Content addresses of a config's artifacts: the environment archive's key, the code package's files and key.

Pure reading: what render needs to name the artifacts in the manifests, computed once per config
(:func:`artifacts`) and handed to render and package, never rebuilt on the way. The interpreter
question is settled here too: an archive's ``bin/python`` links to ``<python_home>/python3.X``, the
stand's image interpreter, so ``python_home`` is part of the key (see :mod:`.environment`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlops_module import __version__, names
from mlops_module.errors import PackagingError as PackagingError  # its home before errors.py
from mlops_module.spec.config import ModelConfig

TARGET_PLATFORM = "x86_64-manylinux_2_28"
ARCHIVE_FORMAT = "3"  # bump when the archive layout changes (2: what never runs in a job is left out; 3: shared
# libraries stripped of their symbol tables, duplicates shipped as links)
BUILTIN_DIR = "_mlops"  # where the code package carries the toolkit's built-in jobs
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # mlops_module/
RUNTIME_DIR = PACKAGE_DIR / "runtime"  # exactly what ships to the cluster, with the leaf modules it imports
BUILTIN_JOBS = RUNTIME_DIR / "jobs"  # main files; shipped under BUILTIN_DIR/
REQUIREMENTS_COPY = "mlops-requirements.txt"
_SKIP_DIRS = {"__pycache__", ".git", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"}



@dataclass(frozen=True)
class EnvSpec:
    """Everything that determines an environment archive, and nothing else."""

    requirements: bytes
    requirements_name: str
    python_version: str
    python_home: str
    platform: str = TARGET_PLATFORM
    keep: tuple[str, ...] = ()  # python.keep: patterns below site-packages the archive keeps anyway

    @property
    def key(self) -> str:
        digest = hashlib.sha256()
        parts = (b"mlops-env", __version__.encode(), ARCHIVE_FORMAT.encode(), self.python_version.encode(),
                 self.python_home.encode(), self.platform.encode(), self.requirements,
                 "\n".join(sorted(self.keep)).encode())
        for part in parts:
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return digest.hexdigest()[:32]

    @property
    def interpreter(self) -> str:
        return f"{self.python_home.rstrip('/')}/python{self.python_version}"


@dataclass(frozen=True)
class Artifacts:
    """Where a stand's Spark jobs find the environment and the code, as storage keys and Spark URIs."""

    env: EnvSpec
    code_key: str
    spark_base: str
    model: str

    @property
    def env_key(self) -> str:
        return self.env.key

    @property
    def env_object(self) -> str:
        return names.env_object(self.env.key)

    @property
    def code_prefix(self) -> str:
        return names.code_prefix(self.model, self.code_key)

    @property
    def env_archive(self) -> str:
        return f"{self.spark_base}/{self.env_object}"

    @property
    def code_base(self) -> str:
        return f"{self.spark_base}/{self.code_prefix}"

    def main_file(self, script: str) -> str:
        return f"{self.code_base}/{script}"

    @property
    def code_zip(self) -> str:
        return f"{self.code_base}/{names.CODE_ZIP}"


def env_spec(cfg: ModelConfig) -> EnvSpec:
    requirements = b""
    if cfg.repo_root is not None and (cfg.repo_root / cfg.requirements).is_file():
        requirements = (cfg.repo_root / cfg.requirements).read_bytes()
    return EnvSpec(requirements, cfg.requirements, cfg.python_version, cfg.stand.python_home, keep=cfg.keep)


def code_files(cfg: ModelConfig) -> list[tuple[str, Path]]:
    """What the code package carries: each script's top directory, the config and requirements (so the
    package alone renders the same DAGs on the next stand), the built-in jobs, the runtime."""
    picked: dict[str, Path] = {}
    root = cfg.repo_root
    if root is not None:
        # every job's script, enabled on this stand or not: the package must be the same on every stand
        scripts = [j.script for j in (cfg.train, cfg.inference, cfg.monitoring) if j.script]
        scripts += [cfg.quality_gate.script] if cfg.quality_gate.script else []
        for script in scripts:
            top = root / script.split("/", 1)[0]
            if "/" in script and top.is_dir():
                for rel, path in _tree(top, root):
                    picked[rel] = path
            elif (root / script).is_file():
                picked[script] = root / script
        config = cfg.source.resolve()
        if config.is_file() and config.is_relative_to(root):
            picked[config.relative_to(root).as_posix()] = config
        requirements = (root / cfg.requirements).resolve()
        if requirements.is_file() and requirements.is_relative_to(root):  # the package re-renders on its own
            picked[requirements.relative_to(root).as_posix()] = requirements
    for rel, path in _tree(BUILTIN_JOBS, BUILTIN_JOBS):
        if rel != "__init__.py":
            picked[f"{BUILTIN_DIR}/{rel}"] = path
    picked.update(runtime_files())
    return sorted(picked.items())


def runtime_files() -> dict[str, Path]:
    """What job scripts import, shipped in the code package as ``mlops_module/...``: the runtime folder (its
    built-in jobs aside: they ship as main files), the package's ``__init__``, and the top-level modules
    the runtime imports, found by reading the imports. Those must be leaves (importing only each other):
    anything else would not be there on the cluster, so it is refused here, before a job fails there."""
    shipped = {"mlops_module/__init__.py": PACKAGE_DIR / "__init__.py"}
    for rel, path in _tree(RUNTIME_DIR, PACKAGE_DIR):
        if path.suffix == ".py" and not path.is_relative_to(BUILTIN_JOBS):
            shipped[f"mlops_module/{rel}"] = path
    queue = [p for p in shipped.values()] + [p for _, p in _tree(BUILTIN_JOBS, BUILTIN_JOBS) if p.suffix == ".py"]
    seen: set[Path] = set()
    while queue:
        source = queue.pop()
        if source in seen:
            continue
        seen.add(source)
        for module in toolkit_imports(source):
            parts = module.split(".")[1:]
            if not parts or parts[0] == "runtime":
                continue
            leaf = PACKAGE_DIR / f"{parts[0]}.py"
            if len(parts) > 1 or not leaf.is_file():
                raise PackagingError(f"{source.relative_to(PACKAGE_DIR.parent)} imports {module}, which does not ship "
                                     "to the cluster: the runtime may import only itself and top-level leaf modules")
            shipped[f"mlops_module/{leaf.name}"] = leaf
            queue.append(leaf)
    return shipped


def toolkit_imports(source: Path) -> set[str]:
    """Every ``mlops_module`` module a file imports, at any depth (inside functions too), as dotted names."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_bytes(), str(source))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "mlops_module":
                found |= {f"mlops_module.{a.name}" for a in node.names}
            elif node.module.startswith("mlops_module."):
                found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise PackagingError(f"{source}: relative import in a module that ships to the cluster: spell it "
                                 "`from mlops_module... import ...`")
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name == "mlops_module" or a.name.startswith("mlops_module.")}
    return found


def _tree(top: Path, root: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(top.rglob("*")):
        rel = path.relative_to(root)
        hidden = any(part.startswith(".") for part in rel.parts)  # .DS_Store, .ipynb_checkpoints
        if path.is_file() and not hidden and not (_SKIP_DIRS & set(rel.parts)) and path.suffix != ".pyc":
            yield rel.as_posix(), path


def code_package_key(files: list[tuple[str, Path]]) -> str:
    digest = hashlib.sha256(b"mlops-code\0")
    for rel, path in files:
        for part in (rel.encode(), path.read_bytes()):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()[:32]


def artifacts(cfg: ModelConfig) -> Artifacts:
    return Artifacts(env_spec(cfg), code_package_key(code_files(cfg)), cfg.stand.spark_storage_uri, cfg.name)
