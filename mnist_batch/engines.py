"""The classify job's dispatcher: which engine runs it. The CLI and the Python API call
run_engine; the engines import options, never this module, so the imports point one way:

    cli.py, api.py -> engines.py -> classify.py, ray_engine.py -> options.py
"""

from mnist_batch.errors import USAGE, UserError
from mnist_batch.options import ClassifyOptions, RayOptions

ENGINES = ("local", "ray")


def run_engine(engine: str, opts: ClassifyOptions, ray_opts: RayOptions = RayOptions(), started: float | None = None):
    """Run classify on the named engine (the CLI's --engine, classify_files' engine=); returns
    its ClassifySummary. The engine is imported when it is asked for: Ray's is heavy."""
    if engine == "ray":
        from mnist_batch.ray_engine import classify_ray

        return classify_ray(opts, ray_opts, started)
    if engine == "local":
        from mnist_batch.classify import classify

        return classify(opts, started)
    raise UserError(f"unknown --engine {engine!r}; use {' or '.join(ENGINES)}", USAGE)
