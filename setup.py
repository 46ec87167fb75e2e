"""The one compiled part of mlimages: the label-list scanner (mlimages/data/labels/_labelscan.c).

Optional: where no C compiler is found the build goes on without it and
the label-list reader uses its numpy path (slower, same results).
"""

import sys

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mlimages.data.labels._labelscan",
            ["mlimages/data/labels/_labelscan.c"],
            extra_compile_args=[] if sys.platform == "win32" else ["-O3"],
            optional=True,
        )
    ]
)
