"""largebatch: large-batch training seen through the Hessian.

A small library behind the book's notebooks: data, models, one training loop,
cached experiments, Hessian estimators, attacks and loss-landscape tools.
"""

__version__ = "0.1.0"
