"""The participant SDK: ``segloop_sdk.py`` is a single numpy-only file to copy into an image.

Use ``from segloop.containers.sdk.segloop_sdk import serve`` inside this tree, or
``python -m segloop.containers.sdk.segloop_sdk --predict package.module:function``.
"""
