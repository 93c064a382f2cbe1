"""placeholder"""
def named_splits(model, source=""):
    return model
