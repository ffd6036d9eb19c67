"""Importing customers and orders from the CSV files that POS and e-commerce systems export.

`reader` reads a file as it comes (UTF-8 with or without BOM, Big5/CP950, UTF-16; comma,
semicolon or tab; zh-TW or English headers), `values` parses cells (ROC dates, NT$ prices),
`customers` and `orders` check every row first and then write the good ones in the caller's
transaction, `jobs` runs an upload from the admin in a background thread and keeps its
progress in `import_jobs`.
"""
