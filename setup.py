"""The one compiled part of mlimages: the label-list scanner (mlimages/_labelscan.c).

Optional: where no C compiler is found the build goes on without it and
``mlimages.annotations`` uses its numpy path (slower, same results).
"""

import sys

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mlimages._labelscan",
            ["mlimages/_labelscan.c"],
            extra_compile_args=[] if sys.platform == "win32" else ["-O3"],
            optional=True,
        )
    ]
)
