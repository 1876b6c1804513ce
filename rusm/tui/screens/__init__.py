"""The screens of ``rusm top``: main, process, cluster, help and the kill confirmation."""
