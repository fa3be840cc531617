"""oodml.data"""
