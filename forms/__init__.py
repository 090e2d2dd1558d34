"""What a form means: XLSForm → XForm conversion, the FormSchema, and submission records (pure)."""
