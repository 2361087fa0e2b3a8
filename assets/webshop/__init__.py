"""WebShop data: the catalog vocabulary (vocab.json) and the site stylesheet (site.css)."""
