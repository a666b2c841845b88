"""Terminal views: the rich tables and the progress display the CLI shows; the core never imports them."""
