"""Sphinx configuration: numpydoc API reference, MyST user guide, sphinx-gallery examples, pydata theme.

Built offline with warnings as errors and nitpicky cross-references (``.ci/run``)::

    python -m sphinx -W --keep-going -n -b html docs docs/_build/html
"""

import os
import sys
from pathlib import Path

import aimfair_plugin

os.environ.setdefault("OMP_NUM_THREADS", "1")  # gallery scripts: small nets, one thread each
sys.path.insert(0, str(Path(__file__).parent))

project = "aimfair-plugin"
author = "aimfair-plugin developers"
release = version = aimfair_plugin.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "examples/README.txt", "**/README.md"]
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

autosummary_generate = True
templates_path = ["_templates"]
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
numpydoc_class_members_toctree = False

# No network here (no intersphinx inventories): references to other projects' objects and to builtins are
# not resolved, and nitpicky mode would report every one of them. The package's own references are checked.
nitpicky = True
_EXTERNAL = (r"(numpy|np|pandas|pd|torch|sklearn|skorch|fairlearn|diffusers|transformers|PIL|joblib|matplotlib|aif360|"
             r"safetensors|dask|ray|os|pathlib|collections|typing|abc|enum|dataclasses)(\..*)?")
nitpick_ignore_regex = [
    (r"py:.*", _EXTERNAL),
    (r"py:.*", r"(Module|int|float|str|bool|dict|list|tuple|set|callable|object|None|type|bytes|Exception|UserWarning|"
               r"RuntimeError|ValueError|RuntimeWarning|Path|array-like|ndarray|DataFrame|Series|optional)"),
]

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "reset_modules": ("matplotlib",),
    "doc_module": ("aimfair_plugin",),
    "backreferences_dir": "generated/backreferences",
    "image_scrapers": ("matplotlib",),
}

html_theme = "pydata_sphinx_theme"
html_title = "aimfair-plugin"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path = []
html_show_sourcelink = False
