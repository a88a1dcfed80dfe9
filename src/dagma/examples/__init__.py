"""Example code locations beside the stub: pipelines that show dagma on real work.

:mod:`dagma.examples.training` trains, registers, gates and uses a scikit-learn model
(``pip install 'dagma[training]'``). Nothing here is imported by :mod:`dagma` itself.
"""
