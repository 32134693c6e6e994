"""Wire formats (DAP2 data responses, NetCDF-3 headers): bytes in, arrays and layouts out.

Why separate: these decoders know nothing of HYCOM or OISST and never touch the network, so they are
tested on bytes alone and shared by every access mode that needs them.
"""
