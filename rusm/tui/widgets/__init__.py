"""The widgets of ``rusm top``: they show what they are given and post messages up."""
