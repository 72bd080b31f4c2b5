"""The sweep spec: a search over parameters whose trials are ordinary jobs (README "Sweeps").

Pure data, validated like ``JobSpec``: ``job`` is the template every trial runs, with the trial's
parameters over its own ``params`` (so ``{NAME}`` in its command is the trial's value). The
objective of a trial is the last value it reported of the series ``metric.name``.

Nomenclature: a *trial* is one point of the search (Optuna's word), run as one job; its *number*
counts from 0 within the sweep.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from modelyard.jobs.spec import JobSpec, check_param_name

MAX_TRIALS = 1000  # trials of one sweep
MAX_PARALLEL = 100  # trials of one sweep in flight at once
MAX_GRID = 10_000  # points of a grid
MAX_PARAMETERS = 50
Value = Union[str, int, float, bool]


class FloatParam(BaseModel):
    """A float in [low, high]; ``log``: sampled on a log scale; ``step``: only low + k*step (a grid needs it)."""
    model_config = ConfigDict(extra="forbid")
    type: Literal["float"] = "float"
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> "FloatParam":
        _check_bounds(self.low, self.high, self.log)
        if self.step is not None:
            if self.log:
                raise ValueError("log and step cannot be used together")
            if not math.isfinite(self.step) or (self.high - self.low) / self.step >= MAX_GRID:
                raise ValueError(f"step {self.step} makes more than {MAX_GRID} values between low and high")
        return self

    def grid(self) -> list[Value] | None:
        if self.step is None:
            return None
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [round(self.low + k * self.step, 12) for k in range(n)]


class IntParam(BaseModel):
    """An integer in [low, high] (both included); ``step``: only low + k*step."""
    model_config = ConfigDict(extra="forbid")
    type: Literal["int"] = "int"
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> "IntParam":
        _check_bounds(self.low, self.high, self.log)
        if self.log and self.step != 1:
            raise ValueError("log and step cannot be used together")
        return self

    def grid(self) -> list[Value] | None:
        """Its values, or None where there are more than a grid may hold."""
        if (self.high - self.low) // self.step >= MAX_GRID:
            return None
        return list(range(self.low, self.high + 1, self.step))


class CategoricalParam(BaseModel):
    """One of ``values``."""
    model_config = ConfigDict(extra="forbid")
    type: Literal["categorical"] = "categorical"
    values: list[Value] = Field(min_length=1, max_length=MAX_GRID)

    def grid(self) -> list[Value]:
        return list(self.values)


def _check_bounds(low: float, high: float, log: bool) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("low and high must be finite numbers")
    if low > high:
        raise ValueError(f"low ({low}) must not be above high ({high})")
    if log and low <= 0:
        raise ValueError(f"a log scale needs low > 0, not {low}")


def _param_kind(v: Any) -> str | None:
    """The parameter's type as given, or as its fields say: ``values`` is categorical, integer bounds int."""
    if isinstance(v, BaseModel):
        return v.type  # type: ignore[attr-defined,no-any-return]
    if not isinstance(v, dict):
        return None
    if "type" in v:
        return str(v["type"])
    if "values" in v:
        return "categorical"
    bounds = [v.get("low"), v.get("high"), v.get("step", 1)]
    return "int" if all(isinstance(b, int) and not isinstance(b, bool) for b in bounds) else "float"


Parameter = Annotated[
    Union[Annotated[FloatParam, Tag("float")], Annotated[IntParam, Tag("int")],
          Annotated[CategoricalParam, Tag("categorical")]],
    Discriminator(_param_kind, custom_error_type="parameter",
                  custom_error_message="a parameter is {low, high[, log, step]} or {values: [...]}"),
]


class Metric(BaseModel):
    """The objective: the last value a trial reported of series ``name``."""
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=250)
    goal: Literal["minimize", "maximize"] = "minimize"


class EarlyStopping(BaseModel):
    """Stop trials whose intermediate values are bad (Optuna's median or successive-halving pruner).

    median: a trial is stopped at a step where its best value so far is worse than the median of the
    finished trials' at that step, once ``startup_trials`` trials finished and past ``warmup_steps``.
    successive_halving: ``min_steps`` before the first rung, ``reduction_factor`` between rungs.
    """
    model_config = ConfigDict(extra="forbid")
    type: Literal["median", "successive_halving"]
    warmup_steps: int = Field(0, ge=0)
    startup_trials: int = Field(1, ge=0)
    min_steps: int = Field(1, ge=1)
    reduction_factor: int = Field(4, ge=2)


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("sweep", min_length=1, max_length=150)
    job: JobSpec
    parameters: dict[str, Parameter] = Field(min_length=1, max_length=MAX_PARAMETERS)
    method: Literal["grid", "random", "tpe"] = "tpe"
    metric: Metric
    max_trials: int | None = Field(None, ge=1, le=MAX_TRIALS, description="grid: at most its size")
    parallel: int = Field(1, ge=1, le=MAX_PARALLEL)
    early_stopping: EarlyStopping | None = None
    seed: int | None = None

    @field_validator("parameters")
    @classmethod
    def _names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            check_param_name(name)
        return v

    @field_validator("job")
    @classmethod
    def _no_inline_secrets(cls, v: JobSpec) -> JobSpec:
        inline = [n for n, value in v.secrets.items() if value is not None]
        if inline:
            raise ValueError(f"secret {inline[0]} is given inline; a sweep's job names stored secrets only "
                             f"(modelyard secret set {inline[0]}), so the sweep keeps no secret value")
        return v

    @model_validator(mode="after")
    def _check(self) -> "SweepSpec":
        if self.method == "grid":
            missing = [n for n, p in self.parameters.items() if p.grid() is None]
            if missing:
                raise ValueError(f"parameters.{missing[0]}: a grid needs a step for a float parameter, or values, "
                                 f"and at most {MAX_GRID} of them")
            if self.grid_size() > MAX_GRID:
                raise ValueError(f"the grid has {self.grid_size()} points; at most {MAX_GRID}")
        elif self.max_trials is None:
            raise ValueError(f"max_trials: a {self.method} search needs it (a grid ends when it is covered)")
        return self

    def grid(self) -> dict[str, list[Value]]:
        return {name: p.grid() or [] for name, p in self.parameters.items()}

    def grid_size(self) -> int:
        return math.prod(len(values) for values in self.grid().values())

    def trial_limit(self) -> int:
        """How many trials the sweep runs in all."""
        if self.method == "grid":
            return min(self.max_trials or MAX_GRID, self.grid_size())
        assert self.max_trials is not None
        return self.max_trials

    def trial_spec(self, sweep_id: int, number: int, params: dict[str, Value]) -> JobSpec:
        """The job of trial ``number``: the template with the trial's parameters and the sweep's tag."""
        data = self.job.model_dump()
        data["params"] = {**data["params"], **params}
        data["tags"] = [*data["tags"], sweep_tag(sweep_id)]
        data["name"] = f"{self.name} #{number}"
        return JobSpec.model_validate(data)

    def first_trial(self) -> JobSpec:
        """A trial's job at each parameter's first value: what every trial's job is but for its values."""
        first = {name: p.values[0] if isinstance(p, CategoricalParam) else p.low for name, p in self.parameters.items()}
        return self.trial_spec(0, 0, first)

    @classmethod
    def from_yaml(cls, text: str) -> "SweepSpec":
        """A sweep file; ValueError names what is wrong."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ValueError("a sweep file holds a mapping (name, job, parameters, method, metric, ...)")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ValueError(first_error(e)) from None


def sweep_tag(sweep_id: int) -> str:
    return f"sweep-{sweep_id}"


def first_error(e: ValidationError) -> str:
    """The first problem of a validation error as ``field: message``."""
    err = e.errors()[0]
    where = ".".join(str(part) for part in err["loc"] if not str(part) in ("float", "int", "categorical"))
    message = err["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
