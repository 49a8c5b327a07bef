"""The cached video-embedding store."""
