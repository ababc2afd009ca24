"""Batch classification of handwritten digit images.

    import mnist_batch
    clf = mnist_batch.Classifier()
    digit, confidence = clf.predict_one("scan.png")

Importing the package is light: torch and polars load on first use.
"""

__version__ = "0.1.0"
__all__ = ["Classifier", "ClassifySummary", "UserError", "classify_files"]
SUBMODULES = ("api", "data", "digitize", "labels", "model", "reading", "records", "report", "results")


def __getattr__(name: str):
    if name in ("Classifier", "classify_files"):
        from mnist_batch import api

        return getattr(api, name)
    if name == "ClassifySummary":
        from mnist_batch.run_files import ClassifySummary

        return ClassifySummary
    if name == "UserError":
        from mnist_batch.errors import UserError

        return UserError
    if name in SUBMODULES:  # `mnist_batch.results.scan(...)` after a plain `import mnist_batch`
        import importlib

        return importlib.import_module(f"mnist_batch.{name}")
    raise AttributeError(f"module 'mnist_batch' has no attribute {name!r}")
