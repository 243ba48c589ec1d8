print('quality')
