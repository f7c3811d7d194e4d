"""Designs: one package per design, split by layer (numeric core, inference, results,
site-level design); each ``Design(site_data, *, options).fit()`` returns a
:class:`~dmi_eval.results.DesignResults`."""
