"""tracecc.compile: trace a function (or a module) into a graph, cache it, run it.

    @tracecc.compile
    def train_step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

A call computes its guard key (argument shapes/dtypes/requires_grad, Python scalars, grad
mode); an entry with that key whose other guards hold (lifted tensors, .grad, training
flags, optimizer hyperparameters) runs its compiled graph. Otherwise the call is traced
(_capture.py), the graph goes through the passes and a backend, and the new entry runs.
Too many recompiles: a warning naming the guard that keeps failing, then eager calls.
See docs/compile.md for the semantics and their limits.
"""

from __future__ import annotations

import functools
import inspect
import os
import time
import types
import weakref

from . import _grad_mode
from . import _logging
from . import _tensor as _tensor_mod
from ._capture import capture
from ._guards import World, arg_key, describe_args, first_difference, flatten
from ._trace import short_location
from .runtime.errors import (
    InvalidArgumentError, RecompileError, TraceccError, UnsupportedError, is_internal,
)

STANCES = ("default", "fail_on_recompile", "eager_on_recompile", "force_eager")
_stance = "default"
RECOMPILE_LIMIT = int(os.environ.get("TRACECC_RECOMPILE_LIMIT", "8"))


class set_stance:
    """Set how compiled functions behave, globally; also a context manager / decorator that
    restores the previous stance:

    - "default": trace on a guard miss (up to the recompile limit), run compiled code.
    - "fail_on_recompile": a guard miss after the first compile raises TC103.
    - "eager_on_recompile": a guard miss after the first compile runs eagerly.
    - "force_eager": ignore compile, always run the original function.
    """

    def __init__(self, stance: str = "default"):
        global _stance
        if stance not in STANCES:
            raise InvalidArgumentError(f"set_stance: unknown stance {stance!r}",
                                       hint=f"use one of {', '.join(STANCES)}")
        self.prev, _stance = _stance, stance

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _stance
        _stance = self.prev
        return False

    def __call__(self, fn):
        global _stance
        stance, _stance = _stance, self.prev  # as a decorator it applies inside fn only

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            global _stance
            prev, _stance = _stance, stance
            try:
                return fn(*args, **kwargs)
            finally:
                _stance = prev

        return wrapper


def _backend_for(backend: str, tensors) -> str:
    """"auto" on cuda arguments: the Triton backend (its interpreter on the emulated device)."""
    if backend == "auto" and any(t.is_cuda for t in tensors):
        from .runtime import cuda
        return "triton_interpret" if cuda.emulated() else "triton"
    return backend


def get_stance() -> str:
    return _stance


class CompiledFunction:
    """What compile() returns: callable like the original, with a cache of compiled graphs."""

    def __init__(self, fn, *, backend="auto", fullgraph=True, dynamic=False, name=None,
                 recompile_limit=None, options=None):
        self._fn = fn
        self.backend = backend
        self.options = dict(options or {})
        unknown = set(self.options) - {"passes", "remat"}
        if unknown:
            raise InvalidArgumentError(f"compile: unknown option(s) {sorted(unknown)}",
                                       hint="options: passes=[names of passes to run] "
                                            "(default: all; [] runs the traced graph as is), "
                                            "remat=True/False (min-cut partition)")
        self.fullgraph = fullgraph
        self.dynamic = dynamic
        self.recompile_limit = RECOMPILE_LIMIT if recompile_limit is None else recompile_limit
        self.__name__ = name or getattr(fn, "__name__", None) or type(fn).__name__
        self.__qualname__ = getattr(fn, "__qualname__", self.__name__)
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__wrapped__ = fn
        self._cache: dict = {}
        self._entries: list = []  # every entry, in trace order
        self._eager_keys: dict = {}  # key -> why calls with that key run eagerly
        self.traces = 0  # graphs traced (including those that could not be reused)
        self.fallbacks: list[str] = []  # why calls ran eagerly / uncompiled
        self._call_site = "<unknown>"
        self._warned_limit = False
        self._arg_names = _arg_names(fn)
        if dynamic:
            _logging.warn_once("dynamic", "compile(dynamic=True): dynamic shapes are not supported "
                                          "yet; each new shape compiles a new graph")

    # ------------------------------------------------------------ the call path
    def __call__(self, *args, **kwargs):
        if _tensor_mod._tracer is not None:  # called inside another trace: inline it
            return self._fn(*args, **kwargs)
        if _stance == "force_eager":
            return self._fn(*args, **kwargs)
        try:
            key, tensors, objects = arg_key(args, kwargs, _grad_mode._enabled)
            entries = self._cache.get(key)
            if entries is not None:
                for entry in entries:
                    if entry.unguarded or entry.failure() is None:
                        return entry.run(tensors)
            return self._miss(key, tensors, objects, args, kwargs)
        except TraceccError as e:
            if os.environ.get("TRACECC_VERBOSE", "") in ("", "0"):
                e.__traceback__ = _user_traceback(e.__traceback__)
                e.__suppress_context__ = True
            raise

    def _miss(self, key, tensors, objects, args, kwargs):
        self._call_site = short_location()
        reason = self._why(key, args, kwargs)
        if key in self._eager_keys:
            return self._fn(*args, **kwargs)
        if self._entries:
            if _stance == "fail_on_recompile":
                raise RecompileError(f"{self.__name__} would recompile: {reason}",
                                     hint='set_stance("default") allows recompiling; guards are '
                                          "listed by tracecc.explain(fn, *args)")
            if _stance == "eager_on_recompile":
                return self._fn(*args, **kwargs)
        if self.traces >= self.recompile_limit:
            if not self._warned_limit:
                self._warned_limit = True
                _logging.warn_once(f"limit:{id(self)}",
                                   f"{self.__name__} hit the recompile limit "
                                   f"({self.recompile_limit}); the last guard that failed: "
                                   f"{reason}. Calls that miss the cache now run eagerly "
                                   f"(at {self._call_site})")
            self.fallbacks.append(f"recompile limit: {reason}")
            return self._fn(*args, **kwargs)
        if self.traces:
            _logging.log("recompiles", f"recompiling {self.__name__} at {self._call_site}: "
                                       f"{reason}")
        return self._compile_and_run(key, tensors, objects, args, kwargs)

    def _why(self, key, args, kwargs) -> str:
        if not self._entries:
            return "first call"
        desc = describe_args(args, kwargs, self._arg_names, _grad_mode._enabled)
        same_key = self._cache.get(key)
        if same_key:
            return same_key[-1].failure() or "guards failed"
        return first_difference(self._entries[-1].arg_desc, desc)

    def _compile_and_run(self, key, tensors, objects, args, kwargs):
        world = self._world(args, kwargs)
        paths: list[str] = []
        flatten((list(args), dict(sorted(kwargs.items()))), [], "", paths)
        paths = [_arg_path(p, self._arg_names) for p in paths]
        sink = _logging.Sink(self.__name__)
        self.traces += 1
        t0 = time.perf_counter()
        captured = capture(self, args, kwargs, tensors, paths, world)
        t1 = time.perf_counter()
        if captured.entry is None:
            msg = f"{self.__name__} at {self._call_site}: {captured.reason}"
            self.fallbacks.append(msg)
            _logging.log("graph", f"not reusable: {msg}")
            if captured.graph is not None:
                sink.stage("traced_not_reused", captured.graph, kind="graph")
            if not self.fullgraph and captured.reason.startswith("needed a concrete value"):
                self._eager_keys[key] = captured.reason
                _logging.warn_once(f"break:{id(self)}:{captured.reason}",
                                   f"{self.__name__} runs eagerly (fullgraph=False): "
                                   f"{captured.reason}")
            return captured.result
        entry = captured.entry
        entry.objects = objects
        entry.arg_desc = describe_args(args, kwargs, self._arg_names, _grad_mode._enabled)
        entry.compile(_backend_for(self.backend, tensors), sink, self.options.get("passes"),
                      self.options.get("remat"))
        t2 = time.perf_counter()
        _logging.log("perf", f"{self.__name__}: traced {len(entry.graph.nodes)} nodes in "
                             f"{(t1 - t0) * 1e3:.1f} ms; passes and backend {entry.backend!r} in "
                             f"{(t2 - t1) * 1e3:.1f} ms; {len(entry.final)} graph(s), "
                             f"{sum(len(g.nodes) for g in entry.final)} nodes")
        _write_extras(sink, entry)
        _logging.log("guards", f"{self.__name__}: " + "; ".join(guard_lines(entry)))
        self._cache.setdefault(key, []).append(entry)
        self._entries.append(entry)
        return entry.run(tensors)

    def _world(self, args, kwargs) -> World:
        world = World()
        fn = self._fn
        module = self.__dict__.get("_module")
        if module is not None:  # compile(model): its parameters are "fc1.weight", not "self..."
            world.scan("", module)
        if hasattr(fn, "named_parameters") and hasattr(fn, "training"):
            world.scan("", fn)
        else:
            world.scan_function(fn)
        for name, value in zip(self._arg_names, args):
            if not isinstance(value, _tensor_mod.Tensor):
                world.scan(name, value, 1)
        for name, value in kwargs.items():
            if not isinstance(value, _tensor_mod.Tensor):
                world.scan(name, value, 1)
        world.finish()
        return world

    # ------------------------------------------------------------ introspection
    def kernel_times(self):
        """Seconds per kernel of the most recently compiled graph, re-timed on its last
        call's inputs (the benchmark harness's overhead column); None when the backend
        cannot say (the interpreter)."""
        for entry in reversed(self._entries):
            hook = getattr(entry.runner, "kernel_times", None)
            if hook is not None:
                return hook()
        return None

    def reset(self) -> None:
        """Forget every compiled graph (the next call traces again)."""
        self._cache.clear()
        self._entries.clear()
        self._eager_keys.clear()
        self.traces = 0
        self._warned_limit = False

    @property
    def graphs(self) -> list:
        """The final graph(s) of every cached entry (forward and backward for AOT entries)."""
        return [g for e in self._entries for g in e.final]

    def __repr__(self) -> str:
        return f"<compiled {self.__name__}: {len(self._entries)} graph(s), backend {self.backend}>"

    def __get__(self, obj, objtype=None):  # @compile on a method binds like a function
        if obj is None:
            return self
        bound = self.__dict__.setdefault("_bound", {})  # id(obj) -> (weakref to obj, compiled)
        hit = bound.get(id(obj))
        if hit is None or hit[0]() is not obj:
            try:
                ref = weakref.ref(obj, lambda _, key=id(obj): bound.pop(key, None))
            except TypeError:  # not weak-referenceable: keep it alive with its graphs
                ref = (lambda o: lambda: o)(obj)
            hit = bound[id(obj)] = (ref, CompiledFunction(
                self._fn.__get__(obj, objtype), backend=self.backend, fullgraph=self.fullgraph,
                dynamic=self.dynamic, name=self.__name__, options=self.options))
        return hit[1]


class CompiledModule(CompiledFunction):
    """compile(model): calls go through the compiled graph; attributes are the model's."""

    def __getattr__(self, name):
        module = self.__dict__.get("_module")
        if name.startswith("__") or module is None:
            raise AttributeError(name)
        return getattr(module, name)


def compile(fn=None, *, backend: str = "auto", fullgraph: bool = True, dynamic: bool = False,
            mode: str | None = None, options: dict | None = None, disable: bool = False,
            recompile_limit: int | None = None):
    """Compile a function or an nn.Module. Usable as @compile, @compile(...), compile(fn)
    and compile(model).

    backend: "auto" (the best available), "interpreter" (the reference), or a registered
      backend such as "llvm".
    fullgraph: True (default) raises TC101/TC102 where the function needs a concrete value
      or does something the compiler cannot capture; False runs such calls eagerly instead.
    dynamic: accepted for PyTorch compatibility; shapes are static (a new shape recompiles).
    options: {"passes": [names]} runs only those passes (in pipeline order); [] runs the
      traced graph as it is (bit-for-bit eager results on the interpreter).
      {"remat": True} picks the values a forward-only graph saves for its backward by a
      min-cut, recomputing cheap ops in the backward (default: TRACECC_REMAT=1, else off).
    mode: accepted for compatibility; unused so far.
    disable: return fn unchanged.
    """
    if fn is None:
        return functools.partial(compile, backend=backend, fullgraph=fullgraph, dynamic=dynamic,
                                 mode=mode, options=options, disable=disable,
                                 recompile_limit=recompile_limit)
    if disable:
        return fn
    if not callable(fn):
        raise UnsupportedError(f"compile: expected a function or an nn.Module, got "
                               f"{type(fn).__name__}")
    if isinstance(fn, CompiledFunction):
        return fn
    cls = CompiledModule if hasattr(fn, "named_parameters") and hasattr(fn, "training") \
        else CompiledFunction
    call = fn
    if cls is CompiledModule and hasattr(fn, "_call_impl"):
        call = fn._call_impl  # the uncompiled call, so model.compile() cannot recurse
    compiled = cls(call, backend=backend, fullgraph=fullgraph, dynamic=dynamic,
                   name=type(fn).__name__ if cls is CompiledModule else None,
                   recompile_limit=recompile_limit, options=options)
    if cls is CompiledModule:
        compiled.__dict__["_module"] = fn
        compiled._arg_names = _arg_names(fn.forward)
    return compiled


# ---------------------------------------------------------------- helpers
def _user_traceback(tb):
    """The traceback without tracecc's own frames (TRACECC_VERBOSE=1 keeps them)."""
    frames = []
    while tb is not None:
        if not is_internal(tb.tb_frame.f_code.co_filename):
            frames.append((tb.tb_frame, tb.tb_lasti, tb.tb_lineno))
        tb = tb.tb_next
    new = None
    for frame, lasti, lineno in reversed(frames):
        new = types.TracebackType(new, frame, lasti, lineno)
    return new


def _arg_names(fn) -> list[str]:
    target = fn.forward if hasattr(fn, "forward") and not inspect.isfunction(fn) and \
        not inspect.ismethod(fn) else fn
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return [f"arg{i}" for i in range(32)]
    names = []
    for p in params:
        if p.kind == p.VAR_POSITIONAL:
            names += [f"{p.name}{i}" for i in range(32)]
            break
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
    return names + [f"arg{i}" for i in range(len(names), len(names) + 32)]


def _arg_path(path: str, names: list[str]) -> str:
    """'0.2.x' (position in (args, kwargs)) -> 'batch.x' using the signature's names."""
    parts = path.split(".")
    if parts[0] == "0" and len(parts) > 1:
        i = int(parts[1])
        rest = parts[2:]
        head = names[i] if i < len(names) else f"arg{i}"
    else:
        head, rest = parts[1] if len(parts) > 1 else "kwarg", parts[2:]
    return ".".join([head] + rest)


def guard_lines(entry) -> list[str]:
    lines = [f"{field} == {value!r}" for field, value in entry.arg_desc]
    for t, _, shape, dtype, rg, name in entry.tensor_checks:
        lines.append(f"%{name}: same storage (or another {_type(shape, dtype)}), "
                     f"requires_grad == {rg}")
    for t, was_none, shape, dtype, name in entry.grad_checks:
        lines.append(f"{name} is {'None' if was_none else 'a tensor'}"
                     + (f" of type {_type(shape, dtype)}" if shape is not None else ""))
    for field, value in entry._python_desc:
        if field.endswith(" (identity)"):
            lines.append(f"{field[:-11]}: the same object(s) as when traced")
        elif field.endswith(" (entries)"):
            lines.append(f"{field[:-10]} has {value} entries")
        else:
            lines.append(f"{field} == {value!r}")
    return lines


def _type(shape, dtype) -> str:
    from .passes.printer import SHORT_DTYPES
    return f"{SHORT_DTYPES[dtype.name]}[{','.join(map(str, shape))}]"


def _write_extras(sink, entry) -> None:
    if sink.dir is None:
        return
    sink.file("guards.txt", "\n".join(guard_lines(entry)) + "\n")
    from ._repro import repro_script
    sink.file("repro.py", repro_script(entry.final[0], entry.name))
