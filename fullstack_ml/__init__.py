"The whole life of an ML product, taught and run from literate notebooks."
__version__ = "0.1.0"
