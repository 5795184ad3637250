"""A survey team's own sheets: the FITS-plus-tables folder layout read into a dataset (and written
from one)."""
