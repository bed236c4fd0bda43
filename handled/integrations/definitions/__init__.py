"""One module per integration; each defines ``INTEGRATION``.

The registry imports every module in this package, so adding a sixth
integration means adding one module here.
"""
