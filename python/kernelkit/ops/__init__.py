"""Custom ops (torch.library): validation, dispatch, fake impls and autograd, one file a family."""
