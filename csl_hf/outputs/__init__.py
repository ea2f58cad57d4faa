"""What a CSL run leaves behind: the report (`report`), the model card (`model_card`, its body a template in
``templates/``) and the push to the Hub (`hub`)."""
