"""Pure metric functions, one module per family; import the module you need.

segmentation.py  confusion matrix (a sum over pixels), IoU, mean IoU, pixel and class accuracy
frames.py        PSNR (whole or masked) and gray SSIM of synthesised frames, as DVF's evaluation
spoofing.py      APCER / BPCER / ACER, EER, AUC, TPR at FPR, HTER, as CelebA-Spoof's evaluation
fashion.py       category top-k, attribute top-k recall, landmark error / detection rate,
                 in-shop retrieval hit@k (DeepFashion)
"""
