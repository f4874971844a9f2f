"""Product classification: the shop's own label fields and tags, learned from its catalog.

``features`` gathers the stored descriptors of each product, ``dataset`` its label values
(shop attributes, human corrections), ``heads`` the per-field classifiers, ``hierarchy``
joint decoding of nested fields, ``metrics`` the honest evaluation, ``trainer`` the whole
training run and ``registry`` the stored model versions.
"""
