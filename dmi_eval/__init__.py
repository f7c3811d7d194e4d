"""dmi_eval: reproducible evaluation of Drug Market Intervention sites."""

from dmi_eval.errors import DmiEvalError

__all__ = ["DmiEvalError", "__version__"]
__version__ = "0.1.0"
