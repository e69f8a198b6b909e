"""Build of the optional native flow-log scanner (project metadata is in pyproject.toml).

``shared.adapters._flowscan`` is a C extension with no dependency beyond CPython. It is
``optional``: where no C compiler is found the package still installs, and the flow-log reader
uses its DuckDB SQL path for every blob (slower, same answers; ``zts analyze`` says which path
read the blobs in its input statistics)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "shared.adapters._flowscan",
            sources=["shared/adapters/_flowscan.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra",
                                "-Wno-missing-field-initializers"],
            optional=True,
        )
    ]
)
