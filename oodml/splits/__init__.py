"""oodml.splits"""
