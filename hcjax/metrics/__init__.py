"""Pure metric functions, one module per family; import the module you need.

segmentation.py  confusion matrix (a sum over pixels), IoU, mean IoU, pixel and class accuracy
"""
