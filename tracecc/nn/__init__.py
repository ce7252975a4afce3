"""(filled in by the nn/data issue)"""
