"""The column names csl_hf looks for in a dataset (`csl_hf.data.loading.infer_columns`)."""

IMAGE_COLUMN_NAMES = ("image", "img", "pixel_values")
LABEL_COLUMN_NAMES = ("label", "labels", "fine_label")
DOMAIN_COLUMN_NAMES = ("domain",)
