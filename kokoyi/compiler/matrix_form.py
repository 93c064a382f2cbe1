"""placeholder"""
def matrix_form(model):
    return model
