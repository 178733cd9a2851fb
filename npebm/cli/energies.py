"""The built-in energies by name, and their parameters from ``--param NAME=VALUE``."""
from .common import UsageError


def _norm(name):
    return name.replace("_", "").replace("-", "").replace(" ", "").lower()


def _energy_table():
    """Normalised spelling -> BUILTINS key: ``double_well``, ``DoubleWellEnergy``,
    ``DoubleWellModel`` and ``DoubleWell`` all name the same energy."""
    from ..energies import BUILTINS

    table = {}
    for key, cls in BUILTINS.items():
        base = cls.__name__[:-len("Energy")]
        for name in (key, cls.__name__, base + "Model", base):
            table[_norm(name)] = key
    return table


def _energy_key(name):
    from ..energies import BUILTINS

    key = _energy_table().get(_norm(name))
    if key is None:
        raise UsageError(f"unknown energy {name!r}; choose one of {', '.join(BUILTINS)} (or "
                         "their class names, e.g. GaussianEnergy or TorchEBM's GaussianModel)")
    return key


def _energy_parameters(cls):
    """``{name: default}`` of an energy's constructor (``inspect.Parameter.empty`` when
    required)."""
    import inspect

    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return {p.name: p.default for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _literal(text, what, allow_none=False):
    """A number or a (nested) list of numbers from ``text``, read with
    :func:`ast.literal_eval` (or JSON, for ``NaN``/``Infinity``/``null``), never eval."""
    import ast
    import json

    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            value = _BAD
    if value is None and allow_none:
        return None
    if value is _BAD or not _numeric(value):
        raise UsageError(f"{what}: cannot read {text!r} as a number or a list of numbers "
                         "(e.g. 1.5, [0, 1] or [[1, 0], [0, 1]])")
    return _plain(value)


_BAD = object()


def _numeric(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, (list, tuple)) and all(_numeric(v) for v in value)


def _plain(value):
    """Tuples to lists, so that a value survives a JSON round trip unchanged."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _parse_params(key, items):
    """``{name: value}`` from ``--param NAME=VALUE`` items, checked against the energy."""
    from ..energies import BUILTINS

    known = _energy_parameters(BUILTINS[key])
    params = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--param {item!r}: expected NAME=VALUE, e.g. --param k=2.0")
        if name not in known:
            valid = ", ".join(known) if known else "none"
            raise UsageError(f"unknown parameter {name!r} for energy {key}; its parameters: "
                             f"{valid}")
        if name in params:
            raise UsageError(f"--param {name} is given twice")
        params[name] = _literal(text, f"--param {name}", allow_none=True)
    return params


def _make_energy(key, params, dim):
    """``(energy, params, dim)``: the built-in, its parameters with defaults filled where
    the CLI supplies them (a standard Gaussian), and the dimension of the run."""
    import inspect

    from ..energies import BUILTINS

    cls = BUILTINS[key]
    params = dict(params)
    if key == "gaussian":
        d = dim
        for name in ("mean", "cov"):
            if d is None and isinstance(params.get(name), list):
                d = len(params[name])
        d = 2 if d is None else d
        params.setdefault("mean", [0.0] * d)
        params.setdefault("cov", [[float(i == j) for j in range(d)] for i in range(d)])
    missing = [n for n, default in _energy_parameters(cls).items()
               if default is inspect.Parameter.empty and n not in params]
    if missing:
        example = {"means": "[[-2,0],[2,0]]"}.get(missing[0], "...")
        raise UsageError(f"energy {key} needs --param {missing[0]}={example}")
    try:
        energy = cls(**params)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"energy {key}: {exc}") from None
    if energy.dim is not None and dim is not None and dim != energy.dim:
        raise UsageError(f"--dim {dim} disagrees with energy {key}, which has dimension "
                         f"{energy.dim}")
    dim = energy.dim or dim or 2
    if dim < getattr(energy, "min_dim", 1):
        raise UsageError(f"energy {key} needs --dim >= {energy.min_dim}, got {dim}")
    return energy, params, dim
