"""oodml.features"""
