"""oodml.sweep"""
