"""Task YAMLs -> validated config objects.

The three config types carry the fields and defaults of the GLM-130B harness:
``MultiChoiceTaskConfig`` (``type: mul``), ``GenerationTaskConfig`` (``gen``) and
``LanguageModelTaskConfig`` (``lm``), plus ``ContinuationTaskConfig`` (``continuation``,
lm-evaluation-harness's log-likelihood of a target continuation). Keys may be kebab-case or snake_case. A custom
task class (``module: package.module.Class``) may bring its own config class with
extra fields. Every check that can be made without the model is made here, and every
problem names the YAML file, the line and the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from .errors import Problem

TASK_TYPES = ("mul", "gen", "lm", "continuation", "other")
SAMPLING_STRATEGIES = ("BaseStrategy", "BeamSearchStrategy")
FEWSHOT_SAMPLERS = ("first", "random")
LM_WINDOW_LAYOUTS = ("glm-130b", "glm")
LM_DOCUMENT_SPLITS = ("file", "line")


@dataclass
class BaseTaskConfig:
    """Fields common to every task."""

    name: str
    type: str
    path: str
    module: Optional[str] = None
    metrics: list[str] = field(default_factory=list)
    use_task_mask: bool = False
    use_multitask_encoding: bool = False
    unidirectional: bool = False
    max_seq_length: int = 2048
    file_pattern: Union[str, dict[str, str]] = "**/*.json*"
    micro_batch_size: int = 1
    cluster_by: Optional[str] = None  # an item field shared by dependent items (a passage id): clustered error bars
    # Few-shot prompts built at load time (evaluation/fewshot.py): num_fewshot examples from
    # fewshot_source ("self": the same file without the item; else a path template relative
    # to the task's data folder, {dir} {name} {stem} of the data file), chosen by
    # fewshot_sampler ("first" in file order, or "random" with a per-item seed).
    num_fewshot: int = 0
    fewshot_source: Optional[str] = None
    fewshot_sampler: str = "random"
    fewshot_seed: int = 1234
    fewshot_separator: str = "\n\n"
    target_delimiter: str = ""  # between an example's context and its answer
    description: Optional[str] = None  # put before every item's prompt when the item has no description of its own
    # THUDM/GLM's --unidirectional layout for the original GLM: the first N context tokens
    # stay before the mask, bidirectional; the rest of the context is causal in the blank.
    unidirectional_prefix: int = 0
    context_eos: bool = False  # eos right after the mask (THUDM/GLM's add_eos: its LAMBADA rows)

    DEFAULT_METRICS: typing.ClassVar[tuple[str, ...]] = ()

    def groups(self) -> dict[str, str]:
        """``file_pattern`` as group -> glob (a plain string is one group named ``all``)."""
        if isinstance(self.file_pattern, str):
            return {"all": self.file_pattern}
        return dict(self.file_pattern)

    def effective_max_length(self, model_max_length: Optional[int]) -> int:
        """The scorer caps max_seq_length at the model's positions; checks use the same cap."""
        return min(self.max_seq_length, model_max_length or self.max_seq_length)

    def check(self, model_max_length: Optional[int] = None) -> list[tuple[str, str]]:
        """Cross-field checks: (field, message) pairs. Subclasses extend."""
        problems = []
        if self.unidirectional and not self.use_task_mask:
            problems.append(("unidirectional", "unidirectional mode needs use_task_mask: true ([gMASK])"))
        for name in ("max_seq_length", "micro_batch_size"):
            if getattr(self, name) < 1:
                problems.append((name, f"must be >= 1, got {getattr(self, name)}"))
        if self.num_fewshot < 0:
            problems.append(("num_fewshot", f"must be >= 0, got {self.num_fewshot}"))
        if self.num_fewshot > 0 and not self.fewshot_source:
            problems.append(("num_fewshot", "few-shot examples need a fewshot_source ('self', or a file path template such as '../dev/{dir}/{name}')"))
        if self.unidirectional_prefix < 0:
            problems.append(("unidirectional_prefix", f"must be >= 0, got {self.unidirectional_prefix}"))
        elif self.unidirectional_prefix and not self.unidirectional:
            problems.append(("unidirectional_prefix", "applies in unidirectional mode only (set unidirectional: true)"))
        if self.context_eos and self.unidirectional and not self.unidirectional_prefix:
            problems.append(("context_eos", "puts eos after the mask, so it needs the bidirectional layout or unidirectional_prefix"))
        if self.type in ("gen", "lm"):
            for name in ("unidirectional_prefix", "context_eos"):
                if getattr(self, name):
                    problems.append((name, f"applies to multiple-choice and continuation tasks, not type {self.type}"))
        if self.fewshot_sampler not in FEWSHOT_SAMPLERS:
            problems.append(("fewshot_sampler", f"must be one of {list(FEWSHOT_SAMPLERS)}, got {self.fewshot_sampler!r}"))
        return problems


@dataclass
class MultiChoiceTaskConfig(BaseTaskConfig):
    # lm-eval's "multiple input" (WinoGrande): the choices are alternative contexts
    # (item field contexts_pretokenized) before one shared continuation
    # (continuation_pretokenized); each choice scores log p(continuation | context).
    partial_scoring: bool = False

    DEFAULT_METRICS: typing.ClassVar[tuple[str, ...]] = ("Accuracy",)


@dataclass
class GenerationTaskConfig(BaseTaskConfig):
    sampling_strategy: str = "BaseStrategy"
    num_beams: int = 4
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 3
    min_gen_length: int = 0
    max_gen_length: int = 128
    until: list[str] = field(default_factory=list)  # stop strings (lm-eval generate_until), cut from the decoded text

    DEFAULT_METRICS: typing.ClassVar[tuple[str, ...]] = ("EM", "F1")

    def check(self, model_max_length: Optional[int] = None) -> list[tuple[str, str]]:
        problems = super().check(model_max_length)
        if self.sampling_strategy not in SAMPLING_STRATEGIES:
            problems.append(("sampling_strategy", f"must be one of {list(SAMPLING_STRATEGIES)}, got {self.sampling_strategy!r}"))
        for name in ("num_beams", "max_gen_length"):
            if getattr(self, name) < 1:
                problems.append((name, f"must be >= 1, got {getattr(self, name)}"))
        for name in ("no_repeat_ngram_size", "min_gen_length"):
            if getattr(self, name) < 0:
                problems.append((name, f"must be >= 0, got {getattr(self, name)}"))
        if any(not stop for stop in self.until):
            problems.append(("until", "a stop string must not be empty"))
        if self.min_gen_length > self.max_gen_length:
            problems.append(("min_gen_length", f"{self.min_gen_length} exceeds max_gen_length {self.max_gen_length}"))
        limit = self.effective_max_length(model_max_length)
        if self.max_gen_length + 2 >= limit:
            problems.append(("max_gen_length", f"{self.max_gen_length} leaves no room for context in a sequence of {limit}"))
        return problems


@dataclass
class LanguageModelTaskConfig(BaseTaskConfig):
    generation_length: int = 256  # scored tokens per window (THUDM/GLM's --overlapping-eval)
    # "glm-130b": GLM-130B's harness windows; "glm": THUDM/GLM's LMDataset for the original
    # GLM ([CLS] prompt mask | sop text, the first token unscored; packing.py).
    window_layout: str = "glm-130b"
    detokenizer: Optional[str] = None  # "wikitext" or "ptb": THUDM/GLM's rules, applied before encoding
    documents: str = "file"  # "file": a text file is one document; "line": every non-empty line is one (zero_lm.sh)

    DEFAULT_METRICS: typing.ClassVar[tuple[str, ...]] = ("PPL",)

    def check(self, model_max_length: Optional[int] = None) -> list[tuple[str, str]]:
        problems = super().check(model_max_length)
        for name in ("num_fewshot", "description"):
            if getattr(self, name):
                problems.append((name, "language modelling scores raw text: it has no prompts, so this would be ignored"))
        if self.window_layout not in LM_WINDOW_LAYOUTS:
            problems.append(("window_layout", f"must be one of {list(LM_WINDOW_LAYOUTS)}, got {self.window_layout!r}"))
        if self.documents not in LM_DOCUMENT_SPLITS:
            problems.append(("documents", f"must be one of {list(LM_DOCUMENT_SPLITS)}, got {self.documents!r}"))
        from .detokenizers import DETOKENIZERS

        if self.detokenizer is not None and self.detokenizer not in DETOKENIZERS:
            problems.append(("detokenizer", f"must be one of {sorted(DETOKENIZERS)}, got {self.detokenizer!r}"))
        limit = self.effective_max_length(model_max_length)
        if not 1 <= self.generation_length < limit - 1:
            problems.append(("generation_length", f"must be in [1, {limit - 1}) for a sequence of {limit}, got {self.generation_length}"))
        return problems


@dataclass
class ContinuationTaskConfig(BaseTaskConfig):
    """``type: continuation``: log-likelihood of a given target continuation and whether it is
    the greedy one (lm-evaluation-harness's ``loglikelihood`` requests, e.g. ``lambada_openai``)."""

    DEFAULT_METRICS: typing.ClassVar[tuple[str, ...]] = ("Accuracy", "ContinuationPPL")


CONFIG_BY_TYPE: dict[str, type[BaseTaskConfig]] = {
    "mul": MultiChoiceTaskConfig,
    "gen": GenerationTaskConfig,
    "lm": LanguageModelTaskConfig,
    "continuation": ContinuationTaskConfig,
}


# ---------------------------------------------------------------------------- YAML reading
def read_yaml_with_lines(path: Path) -> tuple[Any, dict[str, int], list[tuple[str, int]]]:
    """Parse a YAML file; return the data, the line of every top-level key, and the keys
    written more than once (PyYAML would silently keep the last value)."""
    text = path.read_text(encoding="utf-8")
    node = yaml.compose(text)
    data = yaml.safe_load(text)
    lines: dict[str, int] = {}
    repeated: list[tuple[str, int]] = []
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            key, line = str(key_node.value), key_node.start_mark.line + 1
            if key in lines:
                repeated.append((key, line))
            else:
                lines[key] = line
    return data, lines, repeated


def normalise_key(key: str) -> str:
    return str(key).replace("-", "_")


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return True
    if origin is Union:
        return any(_type_ok(value, a) for a in args)
    if annotation is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(_type_ok(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_type_ok(k, args[0]) and _type_ok(v, args[1]) for k, v in value.items())
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    return isinstance(value, annotation)


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Union:
        return " or ".join(_type_name(a) for a in args)
    if origin is list:
        return f"a list of {_type_name(args[0])}"
    if origin is dict:
        return f"a mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def import_object(dotted: str) -> Any:
    """Import ``package.module.Name``; the current directory and the project root are searched."""
    for root in (str(Path.cwd()), str(Path(__file__).resolve().parent.parent)):
        if root not in sys.path:
            sys.path.append(root)
    module_name, _, attr = dotted.rpartition(".")
    if not module_name:
        raise ImportError(f"{dotted!r} is not a dotted path 'package.module.ClassName'")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no attribute {attr!r}") from None


@dataclass
class LoadedTask:
    """A validated task: its config, the YAML it came from and its data files per group."""

    config: BaseTaskConfig
    yaml_path: Path
    task_class: type
    data_root: Path
    files: dict[str, list[Path]]  # group -> files (absolute), sorted

    def relative(self, file: Path) -> str:
        return file.relative_to(self.data_root).as_posix()


def parse_task_config(yaml_path: Path, problems: list[Problem], model_max_length: Optional[int] = None) -> Optional[tuple[BaseTaskConfig, type, dict[str, int]]]:
    """Validate one YAML's fields; append problems; return (config, task class, key lines) if valid."""
    from .metrics import METRICS
    from .tasks import TASK_CLASS_BY_TYPE, BaseTask  # local: tasks import this module

    start = len(problems)

    def problem(message: str, key: Optional[str] = None) -> None:
        raw = raw_keys.get(key, key) if key else None
        problems.append(Problem(yaml_path, message, lines.get(raw) if raw else None, raw))

    lines: dict[str, int] = {}
    raw_keys: dict[str, str] = {}
    try:
        data, lines, repeated = read_yaml_with_lines(yaml_path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.append(Problem(yaml_path, f"invalid YAML: {getattr(exc, 'problem', exc)}", mark.line + 1 if mark else None))
        return None
    if not isinstance(data, dict):
        problems.append(Problem(yaml_path, "a task YAML must be a mapping of fields (name, type, path, ...)"))
        return None

    for key, line in repeated:
        problems.append(Problem(yaml_path, f"given more than once (first on line {lines[key]})", line, key))
    values: dict[str, Any] = {}
    for key, value in data.items():
        norm = normalise_key(key)
        if norm in values:
            problems.append(Problem(yaml_path, "given twice (as kebab-case and snake_case)", lines.get(str(key)), str(key)))
        raw_keys[norm] = str(key)
        values[norm] = value

    task_type = values.get("type")
    if task_type is None:
        problem("missing required field", "type")
        return None
    if task_type not in TASK_TYPES:
        problem(f"must be one of {list(TASK_TYPES)}, got {task_type!r}", "type")
        return None

    task_class = TASK_CLASS_BY_TYPE.get(task_type)
    if values.get("module") is not None:
        if not isinstance(values["module"], str):
            problem("must be a dotted path string", "module")
            return None
        try:
            task_class = import_object(values["module"])
        except Exception as exc:  # ImportError, SyntaxError in the user's module, ...
            problem(f"cannot import {values['module']!r}: {exc}", "module")
            return None
        if not (isinstance(task_class, type) and issubclass(task_class, BaseTask)):
            problem(f"{values['module']!r} is not a subclass of evaluation.tasks.BaseTask", "module")
            return None
    elif task_type == "other":
        problem("type 'other' needs a 'module' naming the task class", "module")
        return None

    config_class: type[BaseTaskConfig] = task_class.config_class
    fields_by_name = {f.name: f for f in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    ok = True
    for key, value in values.items():
        if key not in fields_by_name:
            hint = difflib.get_close_matches(key, list(fields_by_name), n=1)
            problem(f"unknown key{f' (did you mean {hint[0]!r}?)' if hint else ''}; known keys: {', '.join(sorted(fields_by_name))}", key)
            ok = False
        elif not _type_ok(value, hints[key]):
            problem(f"must be {_type_name(hints[key])}, got {type(value).__name__} {value!r}", key)
            ok = False
    for name, f in fields_by_name.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in values:
            problem("missing required field", name)
            ok = False
    if not ok:
        return None
    if isinstance(values.get("file_pattern"), dict) and not values["file_pattern"]:
        problem("an empty mapping defines no group", "file_pattern")
        return None

    config = config_class(**values)
    if not config.metrics:
        config.metrics = list(config.DEFAULT_METRICS)
    for key, message in config.check(model_max_length):
        problem(message, key)
    metric_type = task_class.metric_type
    for metric in config.metrics:
        if metric not in METRICS:
            hint = difflib.get_close_matches(metric, list(METRICS), n=1)
            problem(f"unknown metric {metric!r}{f' (did you mean {hint[0]!r}?)' if hint else ''}; known: {sorted(METRICS)}", "metrics")
        elif metric_type not in METRICS[metric].task_types:
            problem(f"metric {metric!r} does not apply to '{metric_type}' tasks (it applies to {list(METRICS[metric].task_types)})", "metrics")
    if len(problems) > start:
        return None
    written = {norm: (raw, lines.get(raw)) for norm, raw in raw_keys.items()}
    return config, task_class, written


def resolve_files(config: BaseTaskConfig, yaml_path: Path, data_path: Path, written: dict[str, tuple[str, Optional[int]]], problems: list[Problem]) -> Optional[tuple[Path, dict[str, list[Path]]]]:
    """Find the task's data folder and every group's files; an empty glob is an error.
    ``written`` maps a field to (its spelling in the YAML, its line)."""

    def problem(message: str, key: str) -> None:
        raw, line = written.get(key, (key, None))
        problems.append(Problem(yaml_path, message, line, raw))

    root = Path(config.path)
    if not root.is_absolute():
        root = data_path / root
    try:
        exists = root.is_dir()
    except OSError as exc:  # e.g. [Errno 36] File name too long
        problem(f"data folder {root} cannot be looked up: {exc.strerror or exc}", "path")
        return None
    if not exists:
        problem(f"data folder {root} does not exist (path is relative to DATA_PATH={data_path})", "path")
        return None
    files: dict[str, list[Path]] = {}
    for group, pattern in config.groups().items():
        if not pattern or not str(pattern).strip():
            problem(f"group {group!r}: the pattern is empty (give a glob such as '**/*.jsonl')", "file_pattern")
            continue
        try:
            matched = sorted(p for p in root.glob(pattern) if p.is_file())
        except (ValueError, NotImplementedError, OSError) as exc:  # '/abs', a name too long, ...
            problem(f"group {group!r}: pattern {pattern!r} cannot be used: {exc}", "file_pattern")
            continue
        if not matched:
            problem(f"group {group!r}: pattern {pattern!r} matches no file under {root}", "file_pattern")
            continue
        files[group] = matched
    if config.num_fewshot > 0 and config.fewshot_source and config.fewshot_source != "self":
        from .fewshot import source_path  # local: fewshot imports this module

        for path in (p for matched in files.values() for p in matched):
            try:
                source = source_path(config, root, path)
            except ValueError as exc:
                problem(str(exc), "fewshot_source")
                break
            if source is not None and not source.is_file():
                problem(f"the few-shot source of {path.relative_to(root)} is {source}, which does not exist", "fewshot_source")
                break
    return (root, files) if len(files) == len(config.groups()) else None


def load_tasks(yaml_paths: list[Path], data_path: Path, model_max_length: Optional[int] = None) -> tuple[list[LoadedTask], list[Problem]]:
    """Validate every YAML and locate its data; returns the tasks and all problems found.
    ``model_max_length`` (the model's positions) caps every task's max_seq_length in the checks."""
    problems: list[Problem] = []
    tasks: list[LoadedTask] = []
    seen: dict[str, Path] = {}
    for yaml_path in yaml_paths:
        parsed = parse_task_config(yaml_path, problems, model_max_length)
        if parsed is None:
            continue
        config, task_class, written = parsed
        if config.name in seen:
            problems.append(Problem(yaml_path, f"duplicate task name {config.name!r} (also in {seen[config.name]})", written["name"][1], "name"))
            continue
        seen[config.name] = yaml_path
        resolved = resolve_files(config, yaml_path, data_path, written, problems)
        if resolved is None:
            continue
        root, files = resolved
        tasks.append(LoadedTask(config, yaml_path, task_class, root, files))
    return tasks, problems
