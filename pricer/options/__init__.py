"""Every option of the command and the plugin, declared once, with the parsers that check them."""
